"""Russian dates as people write them in a sentence: "7 декабря 2026", without Django's "г."."""
DATE_FORMAT = "j E Y"

"""Ukrainian dates as people write them in a sentence: "7 грудня 2026", without Django's "р."."""
DATE_FORMAT = "j E Y"

"""What Cadence remembers: the SQLite store and the candidate events kept between ticks."""

"""Calendar (iCalendar) and mail (MIME) formats, free of any provider."""

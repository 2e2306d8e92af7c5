"""What a run shows a person: report.html, the terminal views, diversity and column docs."""

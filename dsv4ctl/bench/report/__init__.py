"""Reports of a run directory: Rich table, CSV, Markdown, PNG plots and one self-contained HTML."""

"""Who is told what: templates, limits, masking, channels (issue 5)."""

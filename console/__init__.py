"""Web console for admins and the admission desk (server-rendered pages)."""

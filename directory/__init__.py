"""The consortium directory: institutions, departments, staff; the demo seed."""

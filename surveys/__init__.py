"""Satisfaction surveys (the paper's Table 2): questionnaires, invitations after admission and completion,
answers. The figures are in stats.satisfaction."""

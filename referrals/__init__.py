"""The referral domain: state machine, commands, access rules, statistics (issue 4)."""

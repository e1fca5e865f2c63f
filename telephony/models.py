"""Platform-wide telephony inventory (carriers, numbers). Public schema."""

"""Pictures in, vectors out: intake, subject detection, encoders. Knows nothing of the database."""

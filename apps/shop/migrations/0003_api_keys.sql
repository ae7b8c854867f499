-- API keys, when the api requires them (KEEL_API_KEYS=required). A key is shown once, at its
-- creation; only its SHA-256 is kept (a key has 192 random bits: a fast hash is enough, and a
-- lookup is one index probe). Revoked keys stay, so the id in old logs still names something.
CREATE TABLE api_keys (
  id uuid PRIMARY KEY,
  name text NOT NULL,
  key_hash bytea NOT NULL UNIQUE,
  created_at timestamptz NOT NULL DEFAULT now(),
  revoked_at timestamptz
);

-- Accounts: owned by the accounts context. One account per email address, kept in lower case.
CREATE TABLE accounts (
  id uuid PRIMARY KEY,
  email text NOT NULL UNIQUE,
  name text NOT NULL,
  created_at timestamptz NOT NULL
);

-- Notifications: owned by the notifications context. One row per mail sent, keyed by the event
-- that asked for it: a redelivered event finds its row and sends nothing more.
CREATE TABLE notifications_sent (
  event_id uuid PRIMARY KEY,
  kind text NOT NULL,
  recipient text NOT NULL,
  subject text NOT NULL,
  sent_at timestamptz NOT NULL
);

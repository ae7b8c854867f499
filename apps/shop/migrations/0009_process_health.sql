-- A live process whose relay lost its broker refreshes its row like a healthy one: the row also
-- keeps its parts' health when last seen (ProcessHeartbeat, from the process's ServiceGroup), so
-- the dashboard shows which part of which process fails, on what, and since when. By part name:
-- { "<part>": { "status": "ok" | "failing" | "not-running", "dependency"?, "since"?, "error"?, … } }
-- as keel's healthReport gives it: times ISO 8601 on the process's clock, an error as its code only.
-- Rows written before this, or by a process that reports no health, keep '{}'.
ALTER TABLE processes ADD COLUMN health jsonb NOT NULL DEFAULT '{}';

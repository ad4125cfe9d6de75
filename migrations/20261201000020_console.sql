-- The web console: local users, their sessions, login throttling, and the audit trail of
-- every change made through the console or the CLI. Documented in docs/CONSOLE.md.

-- Local console users. Only an argon2id PHC string is stored, never the password.
-- Names are unique case-insensitively (people type them at the sign-in form).
CREATE TABLE sspm.console_users (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name          text NOT NULL,
    role          text NOT NULL,
    password_hash text NOT NULL,
    disabled      boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT console_users_role_valid CHECK (role IN ('viewer', 'operator', 'admin')),
    CONSTRAINT console_users_name_valid CHECK (length(name) BETWEEN 1 AND 64),
    CONSTRAINT console_users_hash_argon2id CHECK (password_hash LIKE '$argon2id$%')
);
CREATE UNIQUE INDEX console_users_name_key ON sspm.console_users (lower(name));

-- Signed-in sessions. The cookie carries a random id; only its SHA-256 is stored, so a
-- database dump cannot be replayed as a cookie. Rows die with their user.
CREATE TABLE sspm.console_sessions (
    id_hash       bytea PRIMARY KEY,
    user_id       uuid NOT NULL REFERENCES sspm.console_users (id) ON DELETE CASCADE,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now(),
    -- Absolute end (console.session_absolute_timeout after sign-in); idle expiry is
    -- last_seen_at + console.session_idle_timeout, checked on every request.
    expires_at    timestamptz NOT NULL,
    client_addr   text,
    CONSTRAINT console_sessions_hash_len CHECK (octet_length(id_hash) = 32)
);
CREATE INDEX console_sessions_user_idx ON sspm.console_sessions (user_id);
CREATE INDEX console_sessions_expires_idx ON sspm.console_sessions (expires_at);

-- Failed sign-ins per key ('user:<lower name>' or 'addr:<client address>'). Kept for
-- unknown user names too, so an unknown name and a wrong password look the same.
CREATE TABLE sspm.console_login_throttle (
    key           text PRIMARY KEY,
    failures      integer NOT NULL DEFAULT 0,
    first_failure_at timestamptz NOT NULL DEFAULT now(),
    locked_until  timestamptz
);

-- Append-only trail of changes. `via` says which door the change came through;
-- 'sql-unknown' is reserved for changes found without an application actor.
-- details never holds a secret (tokens, passwords): writers pass only names and settings.
CREATE TABLE sspm.audit_log (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT now(),
    actor     text NOT NULL,
    via       text NOT NULL,
    action    text NOT NULL,
    target    text NOT NULL,
    details   jsonb NOT NULL DEFAULT '{}'::jsonb,
    CONSTRAINT audit_log_via_valid CHECK (via IN ('console', 'cli', 'sql-unknown'))
);
CREATE INDEX audit_log_at_idx ON sspm.audit_log (at DESC, id DESC);

-- Readers (dashboards, SIEM) may read the trail; users, sessions and throttle state hold
-- password hashes and session hashes and stay private to the application role.
GRANT SELECT ON sspm.audit_log TO sspm_reader;

-- The console's findings page walks one severity at a time in id order (keyset
-- pagination that stays fast over millions of findings).
CREATE INDEX findings_console_page_idx ON sspm.findings (status, severity, id);
CREATE INDEX findings_console_any_idx ON sspm.findings (severity, id);

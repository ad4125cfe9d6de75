-- Alerts: notification channels with their rules, and the transactional outbox that the
-- scan's own transaction writes and the delivery worker drains. docs/ALERTS.md explains
-- the behaviour, docs/DATABASE.md the columns.

-- One place alerts go. Settings that are not secret are plain columns; every secret of
-- the channel (webhook/Slack URL with its token, signing secret, SMTP URL with its
-- password, PagerDuty routing key) lives in ONE sealed JSON document (AES-256-GCM under
-- the token key, the channel id as associated data), or the URL comes from a reference.
CREATE TABLE sspm.notification_channels (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name               text NOT NULL,
    kind               text NOT NULL,
    enabled            boolean NOT NULL DEFAULT true,
    -- webhook body: json | ocsf | cloudevents
    format             text,
    -- email: envelope and headers (not secret)
    email_from         text,
    email_to           text[] NOT NULL DEFAULT '{}',
    -- Sealed secrets (see above).
    secret_ciphertext  bytea,
    secret_nonce       bytea,
    secret_key_id      text,
    -- file:/path or env:VAR holding the URL (webhook, slack, pagerduty base, smtp URL).
    url_ref            text,
    -- Rules.
    min_severity       text NOT NULL DEFAULT 'high',
    events             text[] NOT NULL DEFAULT '{opened,reopened,health}',
    checks             text[] NOT NULL DEFAULT '{}',
    exclude_checks     text[] NOT NULL DEFAULT '{}',
    instances          text[] NOT NULL DEFAULT '{}',
    digest             text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT notification_channels_name_format CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$'),
    CONSTRAINT notification_channels_kind_valid CHECK (kind IN ('webhook', 'slack', 'email', 'pagerduty')),
    CONSTRAINT notification_channels_format_valid CHECK (
        (kind = 'webhook' AND format IN ('json', 'ocsf', 'cloudevents')) OR (kind <> 'webhook' AND format IS NULL)),
    CONSTRAINT notification_channels_severity_valid CHECK (min_severity IN ('critical', 'high', 'medium', 'low', 'info')),
    CONSTRAINT notification_channels_events_valid CHECK (events <@ '{opened,reopened,resolved,health}'::text[]),
    CONSTRAINT notification_channels_sealed_consistent CHECK (
        (secret_ciphertext IS NULL) = (secret_nonce IS NULL) AND (secret_ciphertext IS NULL) = (secret_key_id IS NULL)),
    CONSTRAINT notification_channels_url_ref_format CHECK (url_ref IS NULL OR url_ref ~ '^(file:/.+|env:[A-Za-z_][A-Za-z0-9_]*)$')
);
CREATE UNIQUE INDEX notification_channels_name_key ON sspm.notification_channels (lower(name));

-- One message to one channel: the grouped transitions of one scan, a digest, or a test.
-- `event` is what the message says (rendered per channel kind at send time); the row id
-- is the idempotency key receivers see (`webhook-id`).
CREATE TABLE sspm.notification_outbox (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    channel_id        uuid NOT NULL REFERENCES sspm.notification_channels (id) ON DELETE CASCADE,
    instance_id       uuid REFERENCES sspm.instances (id) ON DELETE SET NULL,
    scan_id           uuid REFERENCES sspm.scans (id) ON DELETE SET NULL,
    kind              text NOT NULL,
    event             jsonb NOT NULL,
    status            text NOT NULL DEFAULT 'pending',
    attempts          integer NOT NULL DEFAULT 0,
    next_attempt_at   timestamptz NOT NULL DEFAULT now(),
    lease_token       uuid,
    lease_owner       text,
    lease_expires_at  timestamptz,
    -- Last HTTP status (or SMTP reply code) and a short error without any secret.
    last_status_code  integer,
    last_error        text,
    digest_slot       timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    delivered_at      timestamptz,
    CONSTRAINT notification_outbox_kind_valid CHECK (kind IN ('scan', 'digest', 'test')),
    CONSTRAINT notification_outbox_status_valid CHECK (status IN ('pending', 'delivered', 'failed', 'dead')),
    CONSTRAINT notification_outbox_lease_consistent CHECK ((lease_token IS NULL) = (lease_expires_at IS NULL))
);
-- The claim statement's index: only pending rows, by due time.
CREATE INDEX notification_outbox_due_idx ON sspm.notification_outbox (next_attempt_at) WHERE status = 'pending';
CREATE INDEX notification_outbox_channel_idx ON sspm.notification_outbox (channel_id, created_at);
-- Once per channel per scan, and once per channel per digest slot.
CREATE UNIQUE INDEX notification_outbox_scan_key ON sspm.notification_outbox (channel_id, scan_id) WHERE scan_id IS NOT NULL;
CREATE UNIQUE INDEX notification_outbox_digest_key ON sspm.notification_outbox (channel_id, digest_slot) WHERE digest_slot IS NOT NULL;

-- enqueue_for_scan reads the transitions its scan just recorded; without this index
-- that is a scan of the whole history table inside every scan's transaction.
CREATE INDEX finding_events_scan_idx ON sspm.finding_events (scan_id);

-- Readers see channels without their secrets or reference, and the delivery status of
-- every message without its body (fail closed: new columns need a migration to be read).
GRANT SELECT (
    id, name, kind, enabled, format, min_severity, events, checks, exclude_checks,
    instances, digest, secret_key_id, created_at, updated_at
) ON sspm.notification_channels TO sspm_reader;
GRANT SELECT (
    id, channel_id, instance_id, scan_id, kind, status, attempts, next_attempt_at,
    last_status_code, last_error, digest_slot, created_at, updated_at, delivered_at
) ON sspm.notification_outbox TO sspm_reader;

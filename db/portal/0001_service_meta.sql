-- Key/value facts about the portal database. schema_migrations is created by the migrator.
CREATE TABLE service_meta (
    key        text PRIMARY KEY,
    value      text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO service_meta (key, value) VALUES ('created_by', 'edgecoder migrate');

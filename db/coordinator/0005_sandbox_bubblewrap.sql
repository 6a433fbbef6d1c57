-- Agents running code under bubblewrap (the C agent's default sandbox) say so, rather than
-- passing for "vm" as they had to while only the original's three modes were known.
ALTER TABLE agents DROP CONSTRAINT agents_sandbox_mode_check;
ALTER TABLE agents ADD CONSTRAINT agents_sandbox_mode_check
    CHECK (sandbox_mode IN ('none', 'docker', 'vm', 'bubblewrap'));

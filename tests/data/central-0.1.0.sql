-- Rows as release 0.1.0 (the last without migrations) stored them: a night nurse and
-- support in the directory, a citizen with a night-check unit and its schedule, a
-- performed night check in the audit chain, the unit's presence and latest health.
-- Portable SQL: the migration test loads it into SQLite and PostgreSQL alike.

INSERT INTO audit ("seq", "ts", "kind", "actor", "unit", "purpose", "call_id", "detail", "prev_hash", "hash") VALUES (1, 1767225600.0, 'duty_on', 'n-asa', NULL, NULL, NULL, '{}', '0000000000000000000000000000000000000000000000000000000000000000', 'e96fe3c77099703e2e82a2e31494b35ec357298671bea75260ffe3c56c70a994');
INSERT INTO audit ("seq", "ts", "kind", "actor", "unit", "purpose", "call_id", "detail", "prev_hash", "hash") VALUES (2, 1767225660.0, 'ticket_issued', 'n-asa', 'u-nc-1', 'night_check', 'central-1.00112233aabbccdd', '{"ttl_s":60}', 'e96fe3c77099703e2e82a2e31494b35ec357298671bea75260ffe3c56c70a994', 'beca8476f8b71b38434e667467284db3c315ea190eb99384a9c50eb959d8e35c');
INSERT INTO audit ("seq", "ts", "kind", "actor", "unit", "purpose", "call_id", "detail", "prev_hash", "hash") VALUES (3, 1767225661.0, 'shutter_open', NULL, 'u-nc-1', NULL, 'central-1.00112233aabbccdd', '{}', 'beca8476f8b71b38434e667467284db3c315ea190eb99384a9c50eb959d8e35c', '690032d5efa88db0f9ca41ed0684b5841078de0161606a16e39cc4cf912eafd2');
INSERT INTO audit ("seq", "ts", "kind", "actor", "unit", "purpose", "call_id", "detail", "prev_hash", "hash") VALUES (4, 1767225721.0, 'shutter_closed', NULL, 'u-nc-1', NULL, 'central-1.00112233aabbccdd', '{}', '690032d5efa88db0f9ca41ed0684b5841078de0161606a16e39cc4cf912eafd2', '553e1b3c7e4a0146bd2ac638b0b57f847335999a988a67d34a72fb70bafad7d0');
INSERT INTO audit ("seq", "ts", "kind", "actor", "unit", "purpose", "call_id", "detail", "prev_hash", "hash") VALUES (5, 1767225721.0, 'call_ended', 'n-asa', 'u-nc-1', 'night_check', 'central-1.00112233aabbccdd', '{"duration_s":60.0,"reason":"hung up by \u00c5sa"}', '553e1b3c7e4a0146bd2ac638b0b57f847335999a988a67d34a72fb70bafad7d0', '0ede8a59d6d9cae6ce6538506dba9548c27dcbf9509d50a7b06fd94a5d452f92');
INSERT INTO citizen_privacy ("citizen_id", "night_view") VALUES ('c-1001', 'escalate');
INSERT INTO citizens ("citizen_id") VALUES ('c-1001');
INSERT INTO health ("device_id", "sent_at", "received_at", "payload") VALUES ('u-nc-1', 1767225630.0, 1767225630.5, '{"uptime_s":1234,"cpu_temp_c":51.5}');
INSERT INTO health_history ("device_id", "slot", "sent_at", "received_at", "payload") VALUES ('u-nc-1', 0, 1767225630.0, 1767225630.5, '{"uptime_s":1234,"cpu_temp_c":51.5}');
INSERT INTO memberships ("staff_id", "group_id") VALUES ('n-asa', 'g-night');
INSERT INTO permissions ("group_id", "citizen_id", "purpose", "direction") VALUES ('g-night', 'c-1001', 'night_check', 'to_unit');
INSERT INTO schedules ("citizen_id", "purpose", "at_minute", "tolerance_min") VALUES ('c-1001', 'night_check', 10, 20);
INSERT INTO schedules ("citizen_id", "purpose", "at_minute", "tolerance_min") VALUES ('c-1001', 'night_check', 210, 20);
INSERT INTO staff ("staff_id", "display_name", "role", "password_hash", "active", "language") VALUES ('n-asa', 'Åsa Öberg', 'night_staff', '$argon2id$v=19$m=65536,t=3,p=4$HSFggixGFxCnxofhKXd/hg$K5+mqkqLJu84p6ant59s5amrf7mAnhtJa6rR83AZ9MA', TRUE, NULL);
INSERT INTO staff ("staff_id", "display_name", "role", "password_hash", "active", "language") VALUES ('s-support', 'Support', 'support', '$argon2id$v=19$m=65536,t=3,p=4$4owXzL/NqJkkXuR3crVmcw$f3M7WLuyOG9sx25lSKXSQiU3xFWRzTCC9gOmqpcG2zY', TRUE, NULL);
INSERT INTO staff_auth ("staff_id", "password_changed_at", "totp_secret", "totp_pending", "totp_enrolled_at") VALUES ('n-asa', 1796407422.8561068, NULL, NULL, NULL);
INSERT INTO staff_auth ("staff_id", "password_changed_at", "totp_secret", "totp_pending", "totp_enrolled_at") VALUES ('s-support', 1796407423.1778479, NULL, NULL, NULL);
INSERT INTO staff_groups ("group_id", "name") VALUES ('g-night', 'Nattpatrullen Söder');
INSERT INTO unit_assignments ("device_id", "citizen_id", "group_id", "profile") VALUES ('u-nc-1', 'c-1001', NULL, NULL);
INSERT INTO units ("device_id", "profile", "agent_version", "bdseq", "rank", "status", "status_since", "first_seen", "last_seen") VALUES ('u-nc-1', NULL, NULL, 7, 0, 'online', 1767225600.0, 1767225600.0, 1767225630.5);
INSERT INTO alerts ("id", "unit", "citizen", "group_id", "check_at", "check_until", "status", "reasons", "raised_at", "cleared_at", "cleared_reason") VALUES ('4f1c2b7e-0000-4000-8000-000000000001', 'u-nc-1', 'c-1001', 'g-night', 1767226200, 1767227400, 'offline', '["connection lost"]', 1767223200.0, 1767223800.0, 'unit back online');

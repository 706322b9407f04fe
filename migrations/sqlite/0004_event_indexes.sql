-- Who may enter which event room, and the tag filter, without full scans.
CREATE INDEX rsvps_user ON rsvps (user_id, status);
CREATE INDEX events_host ON events (host_id);
CREATE INDEX event_tags_tag ON event_tags (tag, event_id);

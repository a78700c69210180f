-- Saving a snapshot with an Opener looks up the data subjects of its
-- stream (eventstore's saveSnapshotPIISQL): nothing is stored for a stream
-- holding personal data of a forgotten subject, and the subjects' key rows
-- are share-locked so that a concurrent forget deletes what it saves.
CREATE INDEX IF NOT EXISTS subject_streams_stream_idx ON subject_streams (stream_id);

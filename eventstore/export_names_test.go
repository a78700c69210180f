package eventstore

// ListenerName is the application_name of s's wake-up listener connection.
func ListenerName(s *Store) string { return s.listenerName() }

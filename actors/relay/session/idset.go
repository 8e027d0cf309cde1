package session

// idSet remembers up to limit message ids, forgetting the oldest first, so
// that a peer cannot grow it without bound. Its zero value with a limit set
// is ready: nothing is allocated until the first id comes.
type idSet struct {
	limit int
	ids   map[string]struct{}
	order []string
}

func (s *idSet) has(id string) bool {
	_, ok := s.ids[id]
	return ok
}

// add remembers id and reports whether it is new.
func (s *idSet) add(id string) bool {
	if s.has(id) {
		return false
	}
	if s.ids == nil {
		s.ids = make(map[string]struct{})
	}
	if len(s.order) == s.limit {
		delete(s.ids, s.order[0])
		s.order[0] = ""
		s.order = s.order[1:]
	}
	s.ids[id] = struct{}{}
	s.order = append(s.order, id)
	return true
}

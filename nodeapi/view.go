package nodeapi

// View is a follower's picture of the cluster: the followed node's members,
// rebuilt from each snapshot and kept up by events. It is not safe for
// concurrent use; its owner locks around it.
type View struct {
	// Members is the followed node's view, by member name.
	Members map[string]Member
	// From is the followed node.
	From string
	// Err is why the last round reached no node (nil after a snapshot).
	Err error
}

// Apply folds one update from Follow into v and reports whether the
// members may have changed (false for an unreachable round).
func (v *View) Apply(u Update) bool {
	switch u.Kind {
	case UpdateSnapshot:
		v.Err = nil
		v.From = u.From.Name
		v.Members = make(map[string]Member, len(u.Snapshot.Members))
		for _, m := range u.Snapshot.Members {
			v.Members[m.Name] = m
		}
	case UpdateEvent:
		if v.Members == nil {
			v.Members = map[string]Member{}
		}
		if u.Event.Type == EventReap {
			delete(v.Members, u.Event.Member.Name)
		} else {
			v.Members[u.Event.Member.Name] = u.Event.Member
		}
	case UpdateUnreachable:
		v.Err = u.Err
		return false
	}
	return true
}

// Ready returns the members that count as joined, the rule `up` waits on:
// alive with a nonce, as seen by a member — another node's view, or the
// member's own once that view holds another alive member. A member alone in
// its own view is ready only when alone(nonce) says so (the first node of a
// new cluster, which has nobody to be seen by).
func (v *View) Ready(alone func(nonce string) bool) []Member {
	alive := 0
	for _, m := range v.Members {
		if m.Status == StatusAlive {
			alive++
		}
	}
	var out []Member
	for _, m := range v.Members {
		nonce := m.Tags[TagNonce]
		if nonce == "" || m.Status != StatusAlive {
			continue
		}
		if m.Name == v.From && alive < 2 && !alone(nonce) {
			continue // alone in its own view: it has not joined anyone yet
		}
		out = append(out, m)
	}
	return out
}

package agentconfig

import "testing"

func TestHandlerConfigValidate(t *testing.T) {
	for _, h := range []HandlerConfig{
		{On: nil, Run: "/x"},
		{On: []string{"member-joined"}, Run: "/x"},
		{On: []string{EventMemberJoin}, Run: "x.sh"},
		{On: []string{EventMemberJoin}, Run: "/a/../x"},
		{On: []string{EventMemberJoin}, Run: "/x", Role: "Worker"},
	} {
		if h.Validate() == nil {
			t.Errorf("%+v: valid, want an error", h)
		}
	}
	if err := (HandlerConfig{On: HandlerEvents, Run: "/etc/clusterctl/h", Role: "worker"}).Validate(); err != nil {
		t.Error(err)
	}
}

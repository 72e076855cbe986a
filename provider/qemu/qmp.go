package qemu

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"time"
)

// qmpPowerdown connects to QEMU's QMP socket and asks for an ACPI
// power-down (system_powerdown). It returns once QEMU accepted the command.
func qmpPowerdown(ctx context.Context, socket string) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return fmt.Errorf("qmp: %w", err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	} else {
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	}
	dec := json.NewDecoder(conn)
	enc := json.NewEncoder(conn)

	var greeting struct {
		QMP *json.RawMessage `json:"QMP"`
	}
	if err := dec.Decode(&greeting); err != nil {
		return fmt.Errorf("qmp greeting: %w", err)
	}
	if greeting.QMP == nil {
		return fmt.Errorf("qmp: %s is not a QMP socket", socket)
	}
	for _, cmd := range []string{"qmp_capabilities", "system_powerdown"} {
		if err := enc.Encode(map[string]string{"execute": cmd}); err != nil {
			return fmt.Errorf("qmp %s: %w", cmd, err)
		}
		if err := qmpReply(dec); err != nil {
			return fmt.Errorf("qmp %s: %w", cmd, err)
		}
	}
	return nil
}

// qmpReply reads messages until the command's reply, skipping events.
func qmpReply(dec *json.Decoder) error {
	for {
		var msg struct {
			Return *json.RawMessage `json:"return"`
			Error  *struct {
				Class string `json:"class"`
				Desc  string `json:"desc"`
			} `json:"error"`
		}
		if err := dec.Decode(&msg); err != nil {
			return err
		}
		switch {
		case msg.Error != nil:
			return fmt.Errorf("%s: %s", msg.Error.Class, msg.Error.Desc)
		case msg.Return != nil:
			return nil
		}
	}
}

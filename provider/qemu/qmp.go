package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"
)

// qmpPowerdown connects to QEMU's QMP socket and asks for an ACPI
// power-down (system_powerdown). It returns once QEMU accepted the command.
func qmpPowerdown(ctx context.Context, socket string) error {
	return qmpExecute(ctx, socket, "system_powerdown")
}

// qmpQuit asks QEMU to quit at once (QMP quit), as the last resort after a
// guest did not power down: QEMU ends the VM as if its power were pulled.
// QEMU may close the socket before its reply arrives; that is success too.
func qmpQuit(ctx context.Context, socket string) error {
	err := qmpExecute(ctx, socket, "quit")
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) {
		return nil
	}
	return err
}

// qmpExecute connects to QEMU's QMP socket, leaves capabilities
// negotiation mode and runs one argument-less command. It returns once
// QEMU answered the command.
func qmpExecute(ctx context.Context, socket, command string) error {
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
	for _, cmd := range []string{"qmp_capabilities", command} {
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

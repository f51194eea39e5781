package remote

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
)

// TestScpCommandQuotesForTheShell runs the command go-scp would start (our prefix plus
// its own %q-quoted path) through sh, with scp replaced by printf, and checks the
// remote scp would get exactly the path we gave.
func TestScpCommandQuotesForTheShell(t *testing.T) {
	for _, p := range []string{
		"/root/userblk.ko",
		"/tmp/a b/c",
		"/tmp/$(touch /tmp/pwned)",
		"/tmp/`id`",
		"/tmp/it's",
		`/tmp/back\slash"quote`,
		"/tmp/$HOME",
	} {
		cmd, err := scpCommand("-f", p)
		if err != nil {
			t.Fatal(err)
		}
		full := strings.Replace(cmd, "scp ", `printf '%s\n' `, 1) + fmt.Sprintf(" -f %q", p)
		out, err := exec.Command("sh", "-c", full).Output()
		if err != nil {
			t.Fatalf("%s: %v", full, err)
		}
		if got := string(out); got != "-f\n"+p+"\n" {
			t.Errorf("path %q reached the remote side as %q", p, got)
		}
	}
	for _, p := range []string{"", "/tmp/new\nline", "/tmp/nul\x00"} {
		if _, err := scpCommand("-qt", p); err == nil {
			t.Errorf("path %q accepted", p)
		}
	}
}

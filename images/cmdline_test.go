package images

import (
	"strings"
	"testing"
)

func TestCheckCmdline(t *testing.T) {
	for _, tc := range []struct {
		params []string
		recipe string
		at     int
		err    string
	}{
		{[]string{"kfence.sample_interval=10", "slub_debug=FZPU", "page_poison=1", "init_on_free=1"}, "rodata=off isolcpus=3", -1, ""},
		{[]string{"slub_debug=FZ,kmalloc-64"}, "", -1, ""},
		{[]string{"kfence.sample_interval=10", "nokaslr"}, "", 1, `"nokaslr": not a debug parameter`},
		{[]string{"isolcpus=2"}, "isolcpus=3", 0, "not a debug parameter"},
		{[]string{"page_poison=yes"}, "", 0, "page_poison takes a value matching"},
		{[]string{"kfence.sample_interval"}, "", 0, "takes a value"},
		{[]string{"init_on_free=1", "init_on_free=0"}, "", 1, "given twice"},
		{[]string{"slub_debug=FZ"}, "slub_debug=P", 0, "the target's own command line sets slub_debug"},
		{[]string{"slub_debug=FZ; reboot"}, "", 0, "takes a value"},
	} {
		at, err := CheckCmdline(tc.params, tc.recipe)
		if at != tc.at || (tc.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%v: at %d err %v, want %d %q", tc.params, at, err, tc.at, tc.err)
		}
	}
}

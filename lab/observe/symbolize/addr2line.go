package symbolize

import (
	"context"
	"debug/elf"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// addr2lineTools are binutils' section-aware symbolizers per ELF machine, the host's own
// first. The lab's set-up installs the cross binutils with the cross compilers.
var addr2lineTools = map[elf.Machine][]string{
	elf.EM_X86_64:  {"addr2line", "x86_64-linux-gnu-addr2line"},
	elf.EM_386:     {"addr2line", "i686-linux-gnu-addr2line", "x86_64-linux-gnu-addr2line"},
	elf.EM_ARM:     {"arm-linux-gnueabihf-addr2line", "arm-none-eabi-addr2line"},
	elf.EM_AARCH64: {"aarch64-linux-gnu-addr2line"},
}

// fileLineRe is one location line of `addr2line -i`: "file:line", maybe followed by
// " (discriminator N)".
var fileLineRe = regexp.MustCompile(`^(.*):(\d+)(?: \(discriminator \d+\))?$`)

// addr2line locates pc, an offset into sym's section, with binutils. Its -j names the
// section, which is what Go's debug/dwarf cannot do for a relocatable object whose
// sections all start at 0. No tool for the machine: nil, and the frame stays
// unsymbolized (as for a symbol the build does not have).
func (o *object) addr2line(sym elf.Symbol, pc uint64) ([]loc, error) {
	if int(sym.Section) >= len(o.f.Sections) {
		return nil, nil
	}
	section := o.f.Sections[sym.Section].Name
	tool := ""
	for _, t := range addr2lineTools[o.f.Machine] {
		if p, err := exec.LookPath(t); err == nil {
			tool = p
			break
		}
	}
	if tool == "" {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, tool, "-f", "-i", "-e", o.path, "-j", section,
		fmt.Sprintf("0x%x", pc)).Output()
	if err != nil {
		return nil, fmt.Errorf("%s -j %s %s: %w", tool, section, o.path, err)
	}
	return parseAddr2line(string(out)), nil
}

// parseAddr2line reads `addr2line -f -i` output: pairs of a function line and a
// location line, innermost first, the same order as locate's chain.
func parseAddr2line(out string) []loc {
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	var chain []loc
	for i := 0; i+1 < len(lines); i += 2 {
		m := fileLineRe.FindStringSubmatch(strings.TrimSpace(lines[i+1]))
		if m == nil || m[1] == "??" {
			continue
		}
		n, _ := strconv.Atoi(m[2])
		if n == 0 {
			continue
		}
		chain = append(chain, loc{fn: strings.TrimSpace(lines[i]), file: m[1], line: n})
	}
	return chain
}

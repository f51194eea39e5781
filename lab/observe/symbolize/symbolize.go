// Package symbolize puts source lines on the frames of a kernel crash report that lie in
// a job's own modules, from the built .ko's DWARF (Go's debug/elf applies the debug
// sections' relocations of a relocatable ARM, i386 or x86_64 object). A frame reads
// "userblk_ioctl+0x5dc/0xd8c [userblk] (kmod/userblk.c:1061)".
package symbolize

import (
	"debug/dwarf"
	"debug/elf"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Module is one of the job's modules as built and as loaded.
type Module struct {
	Name string // as the kernel names it ("userblk")
	KO   string // the built .ko the machine loaded
	// TextAddr is where the module's .text was loaded (/sys/module/NAME/sections/.text):
	// frames printed as a bare address ("[<bf1957a4>] (userblk_ioctl [userblk])") are
	// placed with it. 0: such frames are left out.
	TextAddr uint64
	// SrcDir is the module's source directory relative to the job's root ("kmod"):
	// source files are reported under it.
	SrcDir string
	Root   string // the job's root directory, where SrcDir is
}

// Frame is one symbolized frame.
type Frame struct {
	Text   string // the frame as printed: "userblk_ioctl+0x5dc/0xd8c [userblk]"
	Func   string
	Offset uint64
	Module string
	File   string // relative to the job's root when it is the module's own source
	Line   int
	Inline []string // the inline chain outward from File:Line's function, "func (file:line)"
}

// String is the frame with its source line: "sym+0x1/0x2 [mod] (kmod/x.c:12)".
func (f Frame) String() string {
	if f.File == "" {
		return f.Text
	}
	return fmt.Sprintf("%s (%s:%d)", f.Text, f.File, f.Line)
}

var (
	// sym+0xoff/0xsize [mod], as in call traces, "PC is at", "LR is at" and x86's "RIP: 0010:".
	symRe = regexp.MustCompile(`([A-Za-z_][\w.]*)\+0x([0-9a-f]+)/0x([0-9a-f]+) \[(\w+)\]`)
	// [<addr>] (sym [mod]): ARM's older backtrace form, placed with TextAddr.
	addrRe = regexp.MustCompile(`\[<([0-9a-f]+)>\] \(([A-Za-z_][\w.]*) \[(\w+)\]\)`)
	// a program-counter line: the faulting instruction itself, not a return address.
	// KFENCE's title names the faulting access's PC too (it comes from a page fault);
	// KASAN's names the return address of its check, so it is not one.
	pcRe = regexp.MustCompile(`PC is at |RIP: [0-9a-f]{4}:|EIP: |BUG: KFENCE: `)
	// lockdep's "#4: ffff… (plant_mutex){+.+.}-{3:3}, at: plant_set+0xdc/0x1d0 [kbugs]".
	heldRe = regexp.MustCompile(`#\d+: [0-9a-f]+ \(.*\)\{.*\}, at: `)
)

// Report finds the frames of report that lie in mods and symbolizes them, each distinct
// frame once, in the order they appear. A module whose .ko has no DWARF is an error
// saying so (build it with debug info: ccflags-y += -g, or KCFLAGS=-g).
func Report(report string, mods []Module) ([]Frame, error) {
	byName := map[string]*Module{}
	for i := range mods {
		byName[strings.ReplaceAll(mods[i].Name, "-", "_")] = &mods[i]
	}
	objs := map[string]*object{}
	defer func() {
		for _, o := range objs {
			o.close()
		}
	}()
	open := func(m *Module) (*object, error) {
		if o, ok := objs[m.Name]; ok {
			return o, nil
		}
		o, err := openObject(m.KO)
		if err != nil {
			return nil, err
		}
		objs[m.Name] = o
		return o, nil
	}
	var out []Frame
	seen := map[string]bool{}
	// Call-trace lines first, lockdep's lists of locks held (where each lock was
	// taken, not where the kernel complained) after them: the first frame is the
	// one a finding is named after.
	var lines, held []string
	for _, line := range strings.Split(report, "\n") {
		if heldRe.MatchString(line) {
			held = append(held, line)
		} else {
			lines = append(lines, line)
		}
	}
	for _, line := range append(lines, held...) {
		isPC := pcRe.MatchString(line)
		for _, m := range symRe.FindAllStringSubmatch(line, -1) {
			mod := byName[m[4]]
			if mod == nil || seen[m[0]] {
				continue
			}
			off, _ := strconv.ParseUint(m[2], 16, 64)
			o, err := open(mod)
			if err != nil {
				return nil, err
			}
			fr, err := o.frame(mod, m[1], off, !isPC)
			if err != nil {
				return nil, err
			}
			fr.Text = m[0]
			seen[m[0]] = true
			out = append(out, fr)
		}
		for _, m := range addrRe.FindAllStringSubmatch(line, -1) {
			mod := byName[m[3]]
			if mod == nil || mod.TextAddr == 0 {
				continue
			}
			addr, _ := strconv.ParseUint(m[1], 16, 64)
			o, err := open(mod)
			if err != nil {
				return nil, err
			}
			sym, ok := o.symbol(m[2])
			if !ok || addr < mod.TextAddr+sym.Value || addr >= mod.TextAddr+sym.Value+sym.Size {
				continue
			}
			off := addr - mod.TextAddr - sym.Value
			text := fmt.Sprintf("%s+0x%x/0x%x [%s]", m[2], off, sym.Size, m[3])
			if seen[text] {
				continue
			}
			fr, err := o.frame(mod, m[2], off, !isPC)
			if err != nil {
				return nil, err
			}
			fr.Text = text
			seen[text] = true
			out = append(out, fr)
		}
	}
	return out, nil
}

// Annotate appends " (file:line)" to every frame of report that Report symbolized.
func Annotate(report string, frames []Frame) string {
	for _, f := range frames {
		if f.File != "" {
			report = strings.ReplaceAll(report, f.Text, f.String())
		}
	}
	return report
}

type object struct {
	path string
	f    *elf.File
	d    *dwarf.Data
	syms []elf.Symbol
	text int // index of .text
}

func openObject(ko string) (*object, error) {
	f, err := elf.Open(ko)
	if err != nil {
		return nil, err
	}
	o := &object{path: ko, f: f, text: -1}
	for i, s := range f.Sections {
		if s.Name == ".text" {
			o.text = i
		}
	}
	o.syms, _ = f.Symbols()
	if f.Section(".debug_info") == nil {
		f.Close()
		return nil, fmt.Errorf("%s has no DWARF: build the module with debug info (ccflags-y += -g in its Kbuild, or make KCFLAGS=-g)", ko)
	}
	if o.d, err = f.DWARF(); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", ko, err)
	}
	return o, nil
}

func (o *object) close() { o.f.Close() }

// symbol finds a function symbol; .text's first.
func (o *object) symbol(name string) (elf.Symbol, bool) {
	var best elf.Symbol
	found := false
	for _, s := range o.syms {
		if s.Name != name || elf.ST_TYPE(s.Info) != elf.STT_FUNC {
			continue
		}
		if !found || int(s.Section) == o.text {
			best, found = s, true
		}
	}
	return best, found
}

type loc struct {
	fn   string
	file string
	line int
}

// frame symbolizes fn+off. A return address (every frame but the faulting PC) points
// after its call: the call's line is the one of the byte before.
func (o *object) frame(m *Module, fn string, off uint64, ret bool) (Frame, error) {
	fr := Frame{Func: fn, Offset: off, Module: m.Name}
	sym, ok := o.symbol(fn)
	if !ok {
		return fr, nil // not a symbol of this build: leave it unsymbolized
	}
	pc := sym.Value + off
	if ret && off > 0 {
		pc--
	}
	var chain []loc
	var err error
	if int(sym.Section) == o.text {
		chain, err = o.locate(fn, pc)
	}
	if len(chain) == 0 {
		// A part GCC moved out of line (fn.cold in .text.unlikely, .init.text...): in a
		// relocatable object its addresses collide with .text's, which only a
		// section-aware reader tells apart. Also whatever debug/dwarf could not place
		// (a large function's DWARF 5 ranges and views).
		if c, aerr := o.addr2line(sym, pc); len(c) > 0 {
			chain, err = c, nil
		} else if err == nil {
			err = aerr
		}
	}
	if err != nil || len(chain) == 0 {
		return fr, err
	}
	// The first location in the module's own source is the user's line; the inline
	// chain below it (kernel headers) is kept for the curious.
	pick := 0
	for i, l := range chain {
		if rel := m.relative(l.file); rel != "" {
			pick = i
			break
		}
	}
	fr.File, fr.Line = chain[pick].file, chain[pick].line
	if rel := m.relative(fr.File); rel != "" {
		fr.File = rel
	}
	for _, l := range chain[pick+1:] {
		f := l.file
		if rel := m.relative(f); rel != "" {
			f = rel
		}
		fr.Inline = append(fr.Inline, fmt.Sprintf("%s (%s:%d)", l.fn, f, l.line))
	}
	return fr, nil
}

// relative maps a DWARF file name to the module's source directory in the job's root:
// the build ran in a temporary copy, so the longest tail of the path that exists there
// is taken. "" when the file is not the module's.
func (m *Module) relative(file string) string {
	if m.SrcDir == "" {
		return ""
	}
	parts := strings.Split(filepath.ToSlash(file), "/")
	for i := 0; i < len(parts); i++ {
		tail := path.Join(parts[i:]...)
		if tail == "" {
			continue
		}
		if _, err := os.Stat(filepath.Join(m.Root, m.SrcDir, tail)); err == nil {
			return path.Join(filepath.ToSlash(m.SrcDir), tail)
		}
	}
	return ""
}

// locate returns the source locations of pc inside function fn, innermost first: the
// line table's row, then each inlined call site outward to fn's own line.
func (o *object) locate(fn string, pc uint64) ([]loc, error) {
	r := o.d.Reader()
	for {
		cu, err := r.Next()
		if err != nil {
			return nil, err
		}
		if cu == nil {
			return nil, nil
		}
		if cu.Tag != dwarf.TagCompileUnit {
			r.SkipChildren()
			continue
		}
		lr, err := o.d.LineReader(cu)
		if err != nil || lr == nil {
			r.SkipChildren()
			continue
		}
		// The subprogram named fn whose ranges hold pc, and the inlined calls inside it.
		var stack []*dwarf.Entry
		var sub *dwarf.Entry
		var inl []*dwarf.Entry
		depth := 0
		for {
			e, err := r.Next()
			if err != nil {
				return nil, err
			}
			if e == nil || (e.Tag == 0 && depth == 0) {
				break
			}
			if e.Tag == 0 {
				depth--
				stack = stack[:len(stack)-1]
				continue
			}
			if e.Tag == dwarf.TagSubprogram && sub == nil {
				if name, _ := e.Val(dwarf.AttrName).(string); name == fn && o.covers(e, pc) {
					sub = e
				}
			} else if e.Tag == dwarf.TagInlinedSubroutine && sub != nil && contains(stack, sub) && o.covers(e, pc) {
				inl = append(inl, e)
			}
			if e.Children {
				depth++
				stack = append(stack, e)
			}
		}
		if sub == nil {
			continue
		}
		files := lr.Files()
		row, ok := o.row(lr, sub, pc)
		if !ok {
			return nil, nil
		}
		chain := []loc{{file: row.File.Name, line: row.Line}}
		// Innermost inlined call first: its function is the row's; its call site is in
		// the next one out.
		for i := len(inl) - 1; i >= 0; i-- {
			chain[len(chain)-1].fn = o.name(inl[i])
			cf, _ := inl[i].Val(dwarf.AttrCallFile).(int64)
			cl, _ := inl[i].Val(dwarf.AttrCallLine).(int64)
			name := ""
			if int(cf) < len(files) && files[cf] != nil {
				name = files[cf].Name
			}
			chain = append(chain, loc{file: name, line: int(cl)})
		}
		chain[len(chain)-1].fn = fn
		return chain, nil
	}
}

func contains(stack []*dwarf.Entry, e *dwarf.Entry) bool {
	for _, s := range stack {
		if s == e {
			return true
		}
	}
	return false
}

// name of an inlined subroutine, through its abstract origin.
func (o *object) name(e *dwarf.Entry) string {
	if n, ok := e.Val(dwarf.AttrName).(string); ok {
		return n
	}
	if off, ok := e.Val(dwarf.AttrAbstractOrigin).(dwarf.Offset); ok {
		r := o.d.Reader()
		r.Seek(off)
		if a, err := r.Next(); err == nil && a != nil {
			if n, ok := a.Val(dwarf.AttrName).(string); ok {
				return n
			}
		}
	}
	return "?"
}

func (o *object) covers(e *dwarf.Entry, pc uint64) bool {
	rs, err := o.d.Ranges(e)
	if err != nil {
		return false
	}
	for _, r := range rs {
		if pc >= r[0] && pc < r[1] {
			return true
		}
	}
	return false
}

// row is the line-table row for pc. In a relocatable object every section starts at 0,
// so several sequences may cover pc: the one that also covers the function's start is
// the function's section's.
func (o *object) row(lr *dwarf.LineReader, sub *dwarf.Entry, pc uint64) (dwarf.LineEntry, bool) {
	lo, _ := sub.Val(dwarf.AttrLowpc).(uint64)
	type seq struct{ rows []dwarf.LineEntry }
	var seqs []seq
	var cur seq
	var e dwarf.LineEntry
	for {
		if err := lr.Next(&e); err != nil {
			break
		}
		cur.rows = append(cur.rows, e)
		if e.EndSequence {
			seqs = append(seqs, cur)
			cur = seq{}
		}
	}
	var best dwarf.LineEntry
	found := false
	for _, s := range seqs {
		if len(s.rows) < 2 {
			continue
		}
		start, end := s.rows[0].Address, s.rows[len(s.rows)-1].Address
		if pc < start || pc >= end || lo < start || lo >= end {
			continue
		}
		rows := s.rows
		i := sort.Search(len(rows), func(i int) bool { return rows[i].Address > pc }) - 1
		if i < 0 {
			continue
		}
		// The last row at that address is the most specific one (is_stmt rows first).
		best, found = rows[i], true
	}
	if !found {
		return best, false
	}
	return best, true
}

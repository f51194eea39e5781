// Package cleanup holds what must be undone even when kmodlab exits at once (a second
// Ctrl-C, when the orderly shutdown of the first one hangs): the QEMU processes it
// started and their private temp directories. Whoever makes such a thing registers
// its undoing, and unregisters it once it has cleaned up the ordinary way.
package cleanup

import (
	"sort"
	"sync"
)

var (
	mu   sync.Mutex
	next int
	fns  = map[int]func(){}
)

// Register adds f; the returned func removes it again (call it after cleaning up).
func Register(f func()) (unregister func()) {
	mu.Lock()
	defer mu.Unlock()
	id := next
	next++
	fns[id] = f
	return func() {
		mu.Lock()
		defer mu.Unlock()
		delete(fns, id)
	}
}

// Now runs every registered func, newest first, once each, and forgets them. It
// returns how many ran.
func Now() int {
	mu.Lock()
	ids := make([]int, 0, len(fns))
	for id := range fns {
		ids = append(ids, id)
	}
	todo := fns
	fns = map[int]func(){}
	mu.Unlock()
	sort.Sort(sort.Reverse(sort.IntSlice(ids)))
	for _, id := range ids {
		todo[id]()
	}
	return len(ids)
}

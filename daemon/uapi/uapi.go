// Package uapi mirrors kmod/uapi/userblk.h, the ioctl ABI between userblk.ko and its
// daemon. TestMatchesCHeader checks every size, offset and ioctl number against the C
// header with each available compiler (host, armhf, i386).
package uapi

import "unsafe"

// Control device name under /dev.
const CtlName = "userblk-ctl"

// Map modes (USERBLK_MAP_*).
const (
	MapDefault = 0
	MapAtomic  = 1
	MapLocal   = 2
	MapKmap    = 3
	MapCopier  = 4
)

// ModeNames maps the module's mode names to their numbers.
var ModeNames = map[string]uint32{"default": MapDefault, "atomic": MapAtomic, "local": MapLocal, "kmap": MapKmap, "copier": MapCopier}

// Ops (USERBLK_OP_*).
const (
	OpRead  = 0
	OpWrite = 1
)

// GetNowait is USERBLK_GET_NOWAIT.
const GetNowait = 1

// MaxSegment is USERBLK_MAX_SEGMENT.
const MaxSegment = 65536

// Create is struct userblk_create.
type Create struct {
	Size    uint64
	MapMode uint32
	Index   uint32
}

// Request is struct userblk_request.
type Request struct {
	Xid    uint64
	Pos    uint64
	Len    uint32
	Op     uint32
	Buf    uint64
	BufLen uint32
	Flags  uint32
}

// Complete is struct userblk_complete.
type Complete struct {
	Xid    uint64
	Buf    uint64
	Len    uint32
	Status int32
}

// Linux's generic ioctl encoding (asm-generic/ioctl.h), which arm and x86 both use.
const (
	iocNone  = 0
	iocWrite = 1
	iocRead  = 2
)

func ioc(dir, typ, nr, size uintptr) uintptr { return dir<<30 | size<<16 | typ<<8 | nr }

const magic = 0xB7

// Ioctl numbers.
var (
	IocCreate     = ioc(iocRead|iocWrite, magic, 1, unsafe.Sizeof(Create{}))
	IocGetRequest = ioc(iocRead|iocWrite, magic, 2, unsafe.Sizeof(Request{}))
	IocComplete   = ioc(iocWrite, magic, 3, unsafe.Sizeof(Complete{}))
	IocShutdown   = ioc(iocNone, magic, 4, 0)
)

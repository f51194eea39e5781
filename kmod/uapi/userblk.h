/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * userblk: a block device whose data a userspace daemon supplies.
 *
 * This header is the only definition of the ioctl ABI between userblk.ko and its
 * daemon. The Go mirror (daemon/uapi) is checked against it by a test: every struct
 * layout, ioctl number, constant and mode name. Every struct is laid out without
 * implicit padding so that armhf, i386 and x86_64 agree.
 */
#ifndef _UAPI_LINUX_USERBLK_H
#define _UAPI_LINUX_USERBLK_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define USERBLK_CTL_NAME	"userblk-ctl"	/* /dev/userblk-ctl; opening it needs CAP_SYS_ADMIN */
#define USERBLK_MAX_SEGMENT	65536		/* no segment is larger than this */
#define USERBLK_MAX_SIZE	(1ULL << 40)	/* largest disk: 1 TiB */
#define USERBLK_MAX_IO_TIMEOUT	3600		/* seconds; the largest io_timeout */

/*
 * How a bio segment's page reaches the daemon's copy (module parameter map_mode).
 * atomic, local and atomic-sleep are the bug under study; the module refuses them unless it was
 * loaded with unsafe_modes=1, and taints the kernel when a disk uses them.
 */
#define USERBLK_MAP_DEFAULT	0	/* the module parameter's value */
#define USERBLK_MAP_ATOMIC	1	/* submitter kmap_atomic(), address handed over (bug) */
#define USERBLK_MAP_LOCAL	2	/* submitter kmap_local_page(), handed over (bug) */
#define USERBLK_MAP_KMAP	3	/* submitter kmap(): global mapping (fix) */
#define USERBLK_MAP_COPIER	4	/* the daemon's ioctl maps the page itself (fix) */
#define USERBLK_MAP_ATOMIC_SLEEP 5	/* submitter kmap_atomic(), handed over, and it sleeps
					 * holding it while the daemon serves: the report's
					 * driver as written (bug) */

/* The names map_mode= takes, in USERBLK_MAP_* order (index 0 is the default). */
#define USERBLK_MODE_NAMES	{ "default", "atomic", "local", "kmap", "copier", "atomic-sleep" }

/*
 * Event counters: how often the driver met the interleavings its tests must reach, for
 * every disk together since the module was loaded. One read-only file per event, named
 * by USERBLK_EVENT_NAMES (in USERBLK_EV_* order), holding a decimal count, in
 * USERBLK_EVENTS_DIR. daemon/userblkfuzz reads them before and after a run.
 */
#define USERBLK_EVENTS_DIR	"/sys/class/misc/" USERBLK_CTL_NAME "/events"
#define USERBLK_EV_TIMEOUT_QUEUED	0	/* io_timeout ended a request GET_REQUEST never took */
#define USERBLK_EV_TIMEOUT_SENT		1	/* io_timeout ended a request the daemon had (SENT) */
#define USERBLK_EV_TIMEOUT_BUSY		2	/* io_timeout found its request BUSY (being copied) */
#define USERBLK_EV_COMPLETE_BUSY	3	/* COMPLETE named a request that was BUSY */
#define USERBLK_EV_CLOSE_BUSY		4	/* the control fd was closed while a request was BUSY */
#define USERBLK_EV_DEAD_BUSY		5	/* the disk died (SHUTDOWN, close) while a request was BUSY */
#define USERBLK_EV_MULTISEG_BIO		6	/* a bio of more than one segment */
#define USERBLK_EV_MIDBIO_ERROR		7	/* a multi-segment bio failed after its first segment */
#define USERBLK_EV_COUNT		8
#define USERBLK_EVENT_NAMES	{ "timeout_queued", "timeout_sent", "timeout_busy", \
				  "complete_busy", "close_busy", "dead_busy", \
				  "multiseg_bio", "midbio_error" }

#define USERBLK_OP_READ		0
#define USERBLK_OP_WRITE	1

/* USERBLK_IOC_CREATE: make /dev/userblk<index>, served through this fd (one per fd). */
struct userblk_create {
	__u64 size;		/* in: bytes, a multiple of 4096, at most USERBLK_MAX_SIZE */
	__u32 map_mode;		/* in: USERBLK_MAP_* */
	__u32 index;		/* out: the N of /dev/userblkN */
	__u32 io_timeout;	/* in: seconds a segment may wait for the daemon before it
				 * fails with -EIO; 0: the module's io_timeout */
	__u32 dev_id;		/* out: this disk's random id (dev= in trace lines) */
};

/* USERBLK_IOC_GET_REQUEST: block until a segment is pending, then describe it. */
struct userblk_request {
	__u64 xid;		/* out: transaction id */
	__u64 pos;		/* out: byte offset on the device */
	__u32 len;		/* out: bytes */
	__u32 op;		/* out: USERBLK_OP_* */
	__u64 buf;		/* in: user buffer that receives a write's data */
	__u32 buf_len;		/* in: its size; at least len for writes */
	__u32 flags;		/* in: USERBLK_GET_*; other bits are refused (-EINVAL) */
};

#define USERBLK_GET_NOWAIT	1	/* return -EAGAIN instead of sleeping (busy-polling daemons) */

/* USERBLK_IOC_COMPLETE: finish a request; a read's data comes from buf. */
struct userblk_complete {
	__u64 xid;		/* in: from userblk_request */
	__u64 buf;		/* in: a read's data */
	__u32 len;		/* in: bytes in buf: the request's len for a read, 0 for a write */
	__s32 status;		/* in: 0, or a negative errno that fails the segment */
};

#define USERBLK_IOC_MAGIC	0xB7
#define USERBLK_IOC_CREATE	_IOWR(USERBLK_IOC_MAGIC, 1, struct userblk_create)
#define USERBLK_IOC_GET_REQUEST	_IOWR(USERBLK_IOC_MAGIC, 2, struct userblk_request)
#define USERBLK_IOC_COMPLETE	_IOW(USERBLK_IOC_MAGIC, 3, struct userblk_complete)
#define USERBLK_IOC_SHUTDOWN	_IO(USERBLK_IOC_MAGIC, 4)

#endif /* _UAPI_LINUX_USERBLK_H */

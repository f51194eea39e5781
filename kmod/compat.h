/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Kernel-version differences userblk meets between 6.1 (Debian bookworm) and the 6.6 and
 * 6.12 kernels a Raspberry Pi 4 runs. Built and run by jobs/kernels.yaml on
 * armv7-lpae@trixie (6.12.107) and armv7-lpae@sid (7.2.13). kmap_atomic() is still
 * there in 7.2 (deprecated, a wrapper that disables preemption and page faults around
 * the same CPU-local kmap_local_page() slot), so map_mode=atomic keeps its meaning:
 * the report's code, a mapping valid on the submitting CPU only.
 */
#ifndef USERBLK_COMPAT_H
#define USERBLK_COMPAT_H

#include <linux/version.h>
#include <linux/blkdev.h>
#include <linux/err.h>

/*
 * userblk_alloc_disk - a bio-based gendisk with 4 KiB physical blocks. May sleep.
 * 6.9 made blk_alloc_disk() take queue limits and return an ERR_PTR.
 */
static inline struct gendisk *userblk_alloc_disk(void)
{
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 9, 0)
	struct queue_limits lim = {
		.logical_block_size	= 512,
		.physical_block_size	= 4096,
		.io_min			= 4096,
	};

	return blk_alloc_disk(&lim, NUMA_NO_NODE);
#else
	struct gendisk *disk = blk_alloc_disk(NUMA_NO_NODE);

	if (!disk)
		return ERR_PTR(-ENOMEM);
	blk_queue_logical_block_size(disk->queue, 512);
	blk_queue_physical_block_size(disk->queue, 4096);
	blk_queue_io_min(disk->queue, 4096);
	return disk;
#endif
}

#endif /* USERBLK_COMPAT_H */

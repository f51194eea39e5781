// SPDX-License-Identifier: GPL-2.0
/*
 * kbugs - three planted bugs for the lab's debug kernels to name: a use-after-free
 * (KASAN, or KFENCE on a stock kernel booted with kfence.sample_interval), a lock-order
 * inversion (lockdep) and a sleep while a kmap_atomic() mapping is held (the report's
 * driver; "scheduling while atomic" where the kernel counts preemption, and "sleeping
 * function called from invalid context" with DEBUG_ATOMIC_SLEEP).
 *
 * Write a bug's name to /sys/module/kbugs/parameters/plant to run it once:
 *   echo uaf > /sys/module/kbugs/parameters/plant
 * Each bug is real: load this only on a machine you are about to throw away.
 *
 * Locking and lifetime: lock_a and lock_b exist only to be taken in both orders; each
 * bug runs in the writing task's context, one at a time (plant_mutex).
 */
#include <linux/completion.h>
#include <linux/highmem.h>
#include <linux/jiffies.h>
#include <linux/kfence.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/slab.h>
#include <linux/string.h>

static DEFINE_MUTEX(plant_mutex);
static DEFINE_MUTEX(lock_a);
static DEFINE_MUTEX(lock_b);

/*
 * kbugs_uaf - read a freed object. Prefers an object KFENCE guards, so a stock kernel
 * with KFENCE enabled catches it too; tries for at most a second. May sleep.
 */
static noinline int kbugs_uaf(void)
{
	unsigned long end = jiffies + HZ;
	char *p;

	for (;;) {
		p = kmalloc(64, GFP_KERNEL);
		if (!p)
			return -ENOMEM;
		/* KASAN sees every object (and not KFENCE's): no need to hunt then. */
		if (IS_ENABLED(CONFIG_KASAN) || !IS_ENABLED(CONFIG_KFENCE) ||
		    is_kfence_address(p) || time_after(jiffies, end))
			break;
		kfree(p);
		cond_resched();
	}
	memset(p, 0x5a, 64);
	kfree(p);
	pr_info("kbugs: reading a freed object (kfence: %d)\n", IS_ENABLED(CONFIG_KFENCE) && is_kfence_address(p));
	return READ_ONCE(p[8]) == 0x5a ? 0 : 1;	/* the bug */
}

/* kbugs_inversion - take lock_a then lock_b, then lock_b then lock_a. Sleeps. */
static noinline int kbugs_inversion(void)
{
	mutex_lock(&lock_a);
	mutex_lock(&lock_b);
	mutex_unlock(&lock_b);
	mutex_unlock(&lock_a);

	mutex_lock(&lock_b);
	mutex_lock(&lock_a);	/* the bug: the other order */
	mutex_unlock(&lock_a);
	mutex_unlock(&lock_b);
	return 0;
}

/*
 * kbugs_atomic_sleep - wait for a completion while holding a kmap_atomic() mapping,
 * as the report's driver did while it waited for its daemon (nothing completes it:
 * the wait times out after 20 ms). Sleeps in atomic context: the bug.
 */
static noinline int kbugs_atomic_sleep(void)
{
	struct page *pg = alloc_page(GFP_HIGHUSER);
	DECLARE_COMPLETION_ONSTACK(daemon_done);
	void *addr;

	if (!pg)
		return -ENOMEM;
	addr = kmap_atomic(pg);
	wait_for_completion_timeout(&daemon_done, msecs_to_jiffies(20));	/* the bug */
	kunmap_atomic(addr);
	__free_page(pg);
	return 0;
}

static const struct {
	const char *name;
	int (*run)(void);
} bugs[] = {
	{ "uaf", kbugs_uaf },
	{ "inversion", kbugs_inversion },
	{ "atomic-sleep", kbugs_atomic_sleep },
};

/* plant_set - run the named bug once. Sleeps. */
static int plant_set(const char *val, const struct kernel_param *kp)
{
	unsigned int i;
	int ret;

	for (i = 0; i < ARRAY_SIZE(bugs); i++) {
		if (!sysfs_streq(val, bugs[i].name))
			continue;
		mutex_lock(&plant_mutex);
		pr_info("kbugs: planting %s\n", bugs[i].name);
		ret = bugs[i].run();
		mutex_unlock(&plant_mutex);
		return ret < 0 ? ret : 0;
	}
	return -EINVAL;
}

static const struct kernel_param_ops plant_ops = {
	.set = plant_set,
};
module_param_cb(plant, &plant_ops, NULL, 0200);
MODULE_PARM_DESC(plant, "Write uaf, inversion or atomic-sleep to run that bug once");

static int __init kbugs_init(void)
{
	return 0;
}

static void __exit kbugs_exit(void)
{
}

module_init(kbugs_init);
module_exit(kbugs_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kmodlab example: planted bugs for debug kernels to find");

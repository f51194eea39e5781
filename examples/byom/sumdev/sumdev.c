// SPDX-License-Identifier: GPL-2.0
/*
 * sumdev - a small example module for kmodlab's bring-your-own-module path.
 *
 * /dev/sumdev: whatever is written to an open file is summed (bytes and their
 * byte-wise sum modulo 2^32); reading the same open file returns "bytes=N sum=S\n".
 * The example job (examples/byom/job.yaml) streams a file from an ext4 filesystem on
 * a loop device through it and compares with the sum userspace computes.
 */
#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

struct sumdev_state {
	struct mutex lock;	/* serialises writers and readers of one open file */
	u64 bytes;
	u32 sum;
};

static int sumdev_open(struct inode *inode, struct file *file)
{
	struct sumdev_state *st = kzalloc(sizeof(*st), GFP_KERNEL);

	if (!st)
		return -ENOMEM;
	mutex_init(&st->lock);
	file->private_data = st;
	return 0;
}

static int sumdev_release(struct inode *inode, struct file *file)
{
	kfree(file->private_data);
	return 0;
}

static ssize_t sumdev_write(struct file *file, const char __user *buf, size_t len, loff_t *ppos)
{
	struct sumdev_state *st = file->private_data;
	u8 chunk[256];
	size_t done = 0;

	mutex_lock(&st->lock);
	while (done < len) {
		size_t n = min(len - done, sizeof(chunk));
		size_t i;

		if (copy_from_user(chunk, buf + done, n)) {
			mutex_unlock(&st->lock);
			return done ? done : -EFAULT;
		}
		for (i = 0; i < n; i++)
			st->sum += chunk[i];
		st->bytes += n;
		done += n;
	}
	mutex_unlock(&st->lock);
	return done;
}

static ssize_t sumdev_read(struct file *file, char __user *buf, size_t len, loff_t *ppos)
{
	struct sumdev_state *st = file->private_data;
	char line[64];
	int n;

	mutex_lock(&st->lock);
	n = scnprintf(line, sizeof(line), "bytes=%llu sum=%u\n", st->bytes, st->sum);
	mutex_unlock(&st->lock);
	return simple_read_from_buffer(buf, len, ppos, line, n);
}

static const struct file_operations sumdev_fops = {
	.owner		= THIS_MODULE,
	.open		= sumdev_open,
	.release	= sumdev_release,
	.read		= sumdev_read,
	.write		= sumdev_write,
};

static struct miscdevice sumdev_misc = {
	.minor	= MISC_DYNAMIC_MINOR,
	.name	= "sumdev",
	.fops	= &sumdev_fops,
	.mode	= 0666,
};

static int __init sumdev_init(void)
{
	return misc_register(&sumdev_misc);
}

static void __exit sumdev_exit(void)
{
	misc_deregister(&sumdev_misc);
}

module_init(sumdev_init);
module_exit(sumdev_exit);

MODULE_DESCRIPTION("Byte-sum character device (kmodlab example)");
MODULE_LICENSE("GPL");

// SPDX-License-Identifier: GPL-2.0
/*
 * kunit_example: a tiny function (the Internet checksum of RFC 1071) and its KUnit
 * suite, for kmodlab's kunit step. Loading the module runs the suite; its KTAP goes
 * to the kernel log (and to /sys/kernel/debug/kunit/kmodlab_example/results where the
 * kernel has KUNIT_DEBUGFS).
 *
 * fail_on_purpose=1 makes fold_carry expect a wrong value, so the suite has one case
 * that fails on purpose: what a failing KUnit case looks like in kmodlab's report.
 */
#include <kunit/test.h>
#include <linux/module.h>
#include <linux/types.h>

static bool fail_on_purpose;
module_param(fail_on_purpose, bool, 0444);
MODULE_PARM_DESC(fail_on_purpose, "make the fold_carry case fail (to show a failing case)");

/* kx_fold folds a 32-bit sum of 16-bit words into 16 bits, carries added back. */
static u16 kx_fold(u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return sum;
}

/* kx_checksum is the ones' complement of the ones' complement sum of buf. */
static u16 kx_checksum(const u8 *buf, size_t len)
{
	u32 sum = 0;
	size_t i;

	for (i = 0; i + 1 < len; i += 2)
		sum += (u32)buf[i] << 8 | buf[i + 1];
	if (len & 1)
		sum += (u32)buf[len - 1] << 8;
	return (u16)~kx_fold(sum);
}

static void checksum_empty(struct kunit *test)
{
	KUNIT_EXPECT_EQ(test, kx_checksum(NULL, 0), 0xffff);
}

/* The worked example of RFC 1071, section 3. */
static void checksum_known(struct kunit *test)
{
	static const u8 data[] = { 0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7 };

	KUNIT_EXPECT_EQ(test, kx_checksum(data, sizeof(data)), 0x220d);
}

static void checksum_odd_length(struct kunit *test)
{
	static const u8 data[] = { 0x12, 0x34, 0x56 };

	/* 0x1234 + 0x5600 = 0x6834, complemented. */
	KUNIT_EXPECT_EQ(test, kx_checksum(data, sizeof(data)), 0x97cb);
}

static void fold_carry(struct kunit *test)
{
	u16 want = fail_on_purpose ? 2 : 1;

	KUNIT_EXPECT_EQ(test, kx_fold(0x1ffff), want);
}

static void fold_zero(struct kunit *test)
{
	KUNIT_EXPECT_EQ(test, kx_fold(0), 0);
}

static void needs_highmem(struct kunit *test)
{
	if (!IS_ENABLED(CONFIG_HIGHMEM))
		kunit_skip(test, "this kernel has no HIGHMEM");
	KUNIT_EXPECT_EQ(test, kx_fold(0xffff0001), 1);
}

static struct kunit_case kmodlab_example_cases[] = {
	KUNIT_CASE(checksum_empty),
	KUNIT_CASE(checksum_known),
	KUNIT_CASE(checksum_odd_length),
	KUNIT_CASE(fold_carry),
	KUNIT_CASE(fold_zero),
	KUNIT_CASE(needs_highmem),
	{}
};

static struct kunit_suite kmodlab_example_suite = {
	.name = "kmodlab_example",
	.test_cases = kmodlab_example_cases,
};
kunit_test_suite(kmodlab_example_suite);

MODULE_DESCRIPTION("kmodlab's KUnit example: RFC 1071 checksum tests");
MODULE_LICENSE("GPL");

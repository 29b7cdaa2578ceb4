/*
 * LD_PRELOAD shim for fault-injection tests (t/21_fault_disk.t): makes every write to
 * files under a path prefix fail with an errno of the test's choosing while a flag file
 * exists, the way a disk remounted read-only (EROFS) or failing (EIO) does for a process
 * that already holds its files open. A read-only remount itself is refused (EBUSY) while
 * any file on the mount is open for writing, and root ignores file modes; this shim is
 * how a test takes the disk away from a running apikeyd.
 *
 *   FAULT_SHIM_FLAG    path of the flag file, absent: writes pass. Its content is
 *                      "ERRNO PREFIX": the errno (EROFS, EIO or ENOSPC) and the path
 *                      prefix of the files affected (their /proc/self/fd target)
 *
 * Wraps write, pwrite, pwrite64, writev, pwritev, fsync, fdatasync (what LMDB uses).
 * Build: cc -shared -fPIC -O2 -o fault_shim.so fault_shim.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

static int fault_errno(int fd)
{
    const char *flag = getenv("FAULT_SHIM_FLAG");
    char link[64], target[4096], spec[4096];
    const char *prefix;
    ssize_t n;
    int saved = errno, ffd;

    if (flag == NULL) return 0;
    ffd = open(flag, O_RDONLY | O_CLOEXEC);
    if (ffd < 0) {
        errno = saved;
        return 0;
    }
    n = read(ffd, spec, sizeof(spec) - 1);
    close(ffd);
    spec[n > 0 ? n : 0] = '\0';
    spec[strcspn(spec, "\n")] = '\0';
    prefix = strchr(spec, ' ');
    if (prefix == NULL || prefix[1] == '\0') {
        errno = saved;
        return 0;
    }
    prefix++;

    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    n = readlink(link, target, sizeof(target) - 1);
    errno = saved;
    if (n <= 0) return 0;
    target[n] = '\0';
    if (strncmp(target, prefix, strlen(prefix)) != 0) return 0;
    if (strncmp(spec, "EIO ", 4) == 0) return EIO;
    if (strncmp(spec, "ENOSPC ", 7) == 0) return ENOSPC;
    return EROFS;
}

#define REAL(name) \
    static __typeof__(name) *real_##name; \
    if (real_##name == NULL) real_##name = (__typeof__(name) *) dlsym(RTLD_NEXT, #name)

#define FAIL_IF_FAULT(fd) do { \
        int e_ = fault_errno(fd); \
        if (e_ != 0) { errno = e_; return -1; } \
    } while (0)

ssize_t write(int fd, const void *buf, size_t count)
{
    REAL(write);
    FAIL_IF_FAULT(fd);
    return real_write(fd, buf, count);
}

ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset)
{
    REAL(pwrite);
    FAIL_IF_FAULT(fd);
    return real_pwrite(fd, buf, count, offset);
}

ssize_t pwrite64(int fd, const void *buf, size_t count, off64_t offset)
{
    REAL(pwrite64);
    FAIL_IF_FAULT(fd);
    return real_pwrite64(fd, buf, count, offset);
}

ssize_t writev(int fd, const struct iovec *iov, int iovcnt)
{
    REAL(writev);
    FAIL_IF_FAULT(fd);
    return real_writev(fd, iov, iovcnt);
}

ssize_t pwritev(int fd, const struct iovec *iov, int iovcnt, off_t offset)
{
    REAL(pwritev);
    FAIL_IF_FAULT(fd);
    return real_pwritev(fd, iov, iovcnt, offset);
}

int fsync(int fd)
{
    REAL(fsync);
    FAIL_IF_FAULT(fd);
    return real_fsync(fd);
}

int fdatasync(int fd)
{
    REAL(fdatasync);
    FAIL_IF_FAULT(fd);
    return real_fdatasync(fd);
}

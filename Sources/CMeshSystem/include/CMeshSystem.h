#ifndef MESH_CMESHSYSTEM_H
#define MESH_CMESHSYSTEM_H
#include <sys/types.h>

/// Names the calling thread (the kernel keeps 15 bytes), as /proc/PID/task/TID/comm shows it.
void mesh_set_current_thread_name(const char *name);

/// pidfd_open(2): a file descriptor that becomes readable when the process exits. -1 and errno set
/// on failure.
int mesh_pidfd_open(pid_t pid);

/// pidfd_send_signal(2): signals exactly the process the pidfd names, never a later one that reused
/// its pid. 0, or -1 and errno set.
int mesh_pidfd_send_signal(int pidfd, int sig);

/// posix_spawn with the child in a new session (and so its own process group), stdin from
/// /dev/null and stdout/stderr appended to the given files (NULL: inherit). Returns 0 or an errno.
int mesh_spawn(pid_t *pid, const char *path, char *const argv[], char *const envp[],
               const char *stdout_path, const char *stderr_path, int new_session);
/// posix_spawn for a job: a new session, stdin from /dev/null, stdout and stderr onto `out_fd`,
/// started in `cwd`. Returns 0 or an errno.
int mesh_spawn_job(pid_t *pid, const char *path, char *const argv[], char *const envp[], int out_fd, const char *cwd);
/// prctl(PR_SET_CHILD_SUBREAPER): orphaned descendants become our children, not init's.
int mesh_set_child_subreaper(void);
/// Makes standard output line-buffered (a pipe or a file sees each line when it is printed).
void mesh_line_buffered_stdout(void);
#endif

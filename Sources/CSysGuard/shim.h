#ifndef AUTHTAP_CSYSGUARD_SHIM_H
#define AUTHTAP_CSYSGUARD_SHIM_H

// Process-level protections that Swift cannot call directly: prctl is variadic, and a signal handler must be
// async-signal-safe, which Swift code is not guaranteed to be.

#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

/// No core file, and not dumpable: a core or a ptrace attach by another user would expose raw secrets in memory.
static inline int authtap_disable_core_dumps(void) {
    struct rlimit none = {0, 0};
    int failed = setrlimit(RLIMIT_CORE, &none) != 0;
    failed |= prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0;
    return failed ? -1 : 0;
}

// Storage inside functions: the Swift importer emits inline functions, not a header's file-scope variables.
static inline char *authtap_crash_before(void) {
    static char text[256];
    return text;
}

static inline char *authtap_crash_after(void) {
    static char text[512];
    return text;
}

static inline void authtap_crash_handler(int signo) {
    // Only the fixed line: no registers, no stack words, no memory contents.
    char name[8] = "SIG?";
    switch (signo) {
    case SIGILL: memcpy(name, "SIGILL", 7); break;
    case SIGTRAP: memcpy(name, "SIGTRAP", 8); break;
    case SIGSEGV: memcpy(name, "SIGSEGV", 8); break;
    case SIGBUS: memcpy(name, "SIGBUS", 7); break;
    case SIGFPE: memcpy(name, "SIGFPE", 7); break;
    case SIGABRT: memcpy(name, "SIGABRT", 8); break;
    }
    ssize_t ignored = write(2, authtap_crash_before(), strlen(authtap_crash_before()));
    ignored = write(2, name, strlen(name));
    ignored = write(2, authtap_crash_after(), strlen(authtap_crash_after()));
    (void)ignored;
    signal(signo, SIG_DFL);
    raise(signo);
}

/// Installs the handler for the signals a Swift trap or a memory fault raises: it writes `before`, the signal's
/// name and `after` to standard error, then dies of the same signal.
static inline void authtap_install_crash_handler(const char *before, const char *after) {
    strncpy(authtap_crash_before(), before, 255);
    strncpy(authtap_crash_after(), after, 511);
    struct sigaction action;
    memset(&action, 0, sizeof(action));
    action.sa_handler = authtap_crash_handler;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESETHAND;
    int signals[] = {SIGILL, SIGTRAP, SIGSEGV, SIGBUS, SIGFPE, SIGABRT};
    for (size_t i = 0; i < sizeof(signals) / sizeof(signals[0]); i++) sigaction(signals[i], &action, 0);
}

#endif

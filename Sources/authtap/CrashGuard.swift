import CSysGuard
import Foundation

/// What happens if a bug takes authtap down anyway: memory holds raw tokens, codes and passwords before they are
/// masked, so no core file is written and the process cannot be dumped or attached to by another user, and the
/// crash prints one fixed line instead of a backtrace with registers and stack words.
enum CrashGuard {
    static func install(version: String) {
        if authtap_disable_core_dumps() != 0 {
            FileHandle.standardError.write(Data("authtap: could not turn core dumps off\n".utf8))
        }
        authtap_install_crash_handler(
            "authtap \(version) crashed (",
            "): a bug in authtap, not in your traffic. No core dump was written; see \"Reporting a crash\" in "
                + "authtap's README for what to send.\n")
    }
}

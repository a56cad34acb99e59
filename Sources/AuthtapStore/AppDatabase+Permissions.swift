import Foundation

/// The capture database is masked, but it still tells who talked to which host, when, with which
/// client_id: it is private to its owner (files 0600, folders 0700) whatever the caller's umask.
extension AppDatabase {
    /// The folder the README names for captures. It ships in the repository with mode 0755, so it is
    /// tightened when used, like a folder authtap creates; any other existing folder is the user's and
    /// keeps its mode.
    static let capturesFolderName = "Captures"

    /// Before SQLite opens the file: creates the missing folders (0700) and the database itself (0600),
    /// because SQLite gives its -wal and -shm the main file's mode. Tightens what an earlier run left.
    static func prepareOwnerOnly(databasePath path: String) throws {
        let dir = (path as NSString).deletingLastPathComponent
        if !dir.isEmpty {
            try makeOwnerOnlyFolders(dir)
            if (dir as NSString).lastPathComponent == capturesFolderName { tightenIfOwned(dir, to: 0o700) }
        }
        let fd = Glibc.open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        if fd >= 0 {
            fchmod(fd, 0o600)
            close(fd)
        }
        tightenDatabaseFiles(path)
    }

    /// The main file, -wal and -shm: 0600 when this user owns them (a file of another user is left alone).
    static func tightenDatabaseFiles(_ path: String) {
        for file in [path, path + "-wal", path + "-shm"] { tightenIfOwned(file, to: 0o600) }
    }

    private static func makeOwnerOnlyFolders(_ dir: String) throws {
        if FileManager.default.fileExists(atPath: dir) { return }
        let parent = (dir as NSString).deletingLastPathComponent
        if !parent.isEmpty { try makeOwnerOnlyFolders(parent) }
        do {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: false)
        } catch  where FileManager.default.fileExists(atPath: dir) {
            return  // another process made it first: it is not ours to change
        }
        chmod(dir, 0o700)
    }

    private static func tightenIfOwned(_ path: String, to mode: mode_t) {
        var st = stat()
        guard stat(path, &st) == 0, st.st_uid == geteuid(), st.st_mode & 0o777 != mode else { return }
        chmod(path, mode)
    }
}

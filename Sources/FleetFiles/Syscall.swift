import Glibc
import SystemPackage

/// The one place FleetFiles calls the kernel through: a call interrupted by a signal (`EINTR`) is made again,
/// any other failure becomes its `Errno`.
///
/// NIOPosix funnels its system calls through one such function for the same reason: `EINTR` is easy to
/// forget at one call site of many (fleet once threw on any negative `read` in one place and retried in five).
/// `close` is the exception: on Linux it must not be retried, so it goes through swift-system's
/// `FileDescriptor.close()`.
enum Syscall {
    /// Calls `call` until it returns something other than -1 with `errno` `EINTR`.
    ///
    /// - Throws: the `Errno` of a failure (a return of -1) other than an interruption.
    @inline(__always)
    static func retrying<Result: FixedWidthInteger>(_ call: () -> Result) throws(Errno) -> Result {
        while true {
            let result = call()
            if result != -1 { return result }
            let code = errno
            if code != EINTR { throw Errno(rawValue: code) }
        }
    }

    /// Like ``retrying(_:)`` for calls that return a pointer, nil on failure (`opendir`, `fdopendir`).
    @inline(__always)
    static func retrying<Pointer>(_ call: () -> Pointer?) throws(Errno) -> Pointer {
        while true {
            if let result = call() { return result }
            let code = errno
            if code != EINTR { throw Errno(rawValue: code) }
        }
    }

    /// Opens `path` (relative to `directory` when given), retrying on `EINTR`.
    static func open(
        _ path: String, relativeTo directory: FileDescriptor? = nil, _ flags: Int32, mode: mode_t = 0
    ) throws(Errno) -> FileDescriptor {
        let raw = try retrying { openat(directory?.rawValue ?? AT_FDCWD, path, flags | O_CLOEXEC, mode) }
        return FileDescriptor(rawValue: raw)
    }

    /// `lstat` (or `stat` when `following`) of `name`, relative to `directory` when given (`fstatat`).
    static func status(
        of name: String, relativeTo directory: FileDescriptor? = nil, following: Bool = false
    ) throws(Errno) -> stat {
        var raw = stat()
        let flags: Int32 = following ? 0 : AT_SYMLINK_NOFOLLOW
        _ = try retrying { fstatat(directory?.rawValue ?? AT_FDCWD, name, &raw, flags) }
        return raw
    }

    /// `fstat` of an open file.
    static func status(of descriptor: FileDescriptor) throws(Errno) -> stat {
        var raw = stat()
        _ = try retrying { fstat(descriptor.rawValue, &raw) }
        return raw
    }

    /// Reads into `buffer` at the descriptor's offset, or at `offset` when given (`pread`): the count read,
    /// 0 at the end of the file.
    static func read(
        _ descriptor: FileDescriptor, into buffer: UnsafeMutableRawBufferPointer, at offset: Int64? = nil
    ) throws(Errno) -> Int {
        guard let base = buffer.baseAddress, buffer.count > 0 else { return 0 }
        if let offset {
            return try retrying { pread(descriptor.rawValue, base, buffer.count, off_t(offset)) }
        }
        return try retrying { Glibc.read(descriptor.rawValue, base, buffer.count) }
    }

    /// Writes all of `bytes`, however many calls that takes.
    static func writeAll(_ descriptor: FileDescriptor, _ bytes: UnsafeRawBufferPointer) throws(Errno) {
        guard let base = bytes.baseAddress else { return }
        var offset = 0
        while offset < bytes.count {
            offset += try retrying { Glibc.write(descriptor.rawValue, base + offset, bytes.count - offset) }
        }
    }

    /// Closes a descriptor once, never retried (see the type's comment); a failure is ignored, as nothing
    /// could be done about it.
    static func close(_ descriptor: FileDescriptor) {
        try? descriptor.close()
    }
}

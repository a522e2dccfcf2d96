import CLibArchive
import Glibc

/// File-type bits of `archive_entry_filetype` and `st_mode`.
///
/// libarchive's `AE_IF*` macros are casts (`((__LA_MODE_T)0100000)`) and do not import into Swift, and Glibc's
/// `S_IF*` are ambiguous once both modules are visible, so the values are spelled out here once.
enum FileType {
    static let mask: UInt32 = 0o170_000
    static let regular: UInt32 = 0o100_000  // AE_IFREG
    static let directory: UInt32 = 0o040_000  // AE_IFDIR
    static let symbolicLink: UInt32 = 0o120_000  // AE_IFLNK
    static let characterDevice: UInt32 = 0o020_000  // AE_IFCHR
    static let blockDevice: UInt32 = 0o060_000  // AE_IFBLK
    static let fifo: UInt32 = 0o010_000  // AE_IFIFO
    static let socket: UInt32 = 0o140_000  // AE_IFSOCK
}

/// Runs libarchive calls under a fixed thread locale, because libarchive converts names through `LC_CTYPE`.
///
/// Seen here with libarchive 3.6.2:
/// - Writing in a UTF-8 locale stores names as UTF-8 pax `path` records, and reading converts those to NFC, so a
///   name in NFD would come back as a different name. Writing in the POSIX locale, libarchive cannot translate a
///   non-ASCII name, warns, and stores it as raw bytes under `hdrcharset=BINARY`: every name round-trips byte for
///   byte, and the output does not depend on the process's locale. (`archive_entry_set_pathname_utf8` in the POSIX
///   locale crashes the pax writer, so names are always set as plain C strings.)
/// - Reading in `C.UTF-8` returns names stored as binary unchanged, and converts the UTF-8 names other tools write
///   instead of failing on them with a warning.
enum ArchiveLocale {
    /// Created once and never freed; a `locale_t` is only read after `newlocale` returns. `nil` if the C library
    /// lacks the locale, in which case calls run in the thread's current locale.
    nonisolated(unsafe) private static let posix: locale_t? = newlocale(LC_CTYPE_MASK, "C", nil)
    nonisolated(unsafe) private static let utf8: locale_t? = newlocale(LC_CTYPE_MASK, "C.UTF-8", nil)

    static func writing<Result, Failure: Error>(_ body: () throws(Failure) -> Result) throws(Failure) -> Result {
        try run(in: posix, body)
    }

    static func reading<Result, Failure: Error>(_ body: () throws(Failure) -> Result) throws(Failure) -> Result {
        try run(in: utf8, body)
    }

    private static func run<Result, Failure: Error>(
        in locale: locale_t?, _ body: () throws(Failure) -> Result
    ) throws(Failure) -> Result {
        guard let locale else { return try body() }
        let previous = uselocale(locale)
        defer { uselocale(previous) }
        return try body()
    }
}

/// The libarchive message for the last failure on `archive`, or a fallback when it has none.
func libraryMessage(_ archive: OpaquePointer) -> String {
    guard let message = archive_error_string(archive) else { return "libarchive reported no message" }
    return String(cString: message)
}

/// The system's words for an `errno` value.
func systemMessage(_ number: Int32) -> String {
    String(cString: strerror(number))
}

/// Writes all `count` bytes at `base` to `fd`, retrying on `EINTR` and short writes.
///
/// - Returns: 0 on success, or the `errno` of the failed `write`.
func writeFully(_ fd: Int32, _ base: UnsafeRawPointer, _ count: Int) -> Int32 {
    var offset = 0
    while offset < count {
        let written = Glibc.write(fd, base + offset, count - offset)
        if written < 0 {
            if errno == EINTR { continue }
            return errno
        }
        offset += written
    }
    return 0
}

/// Reads up to `count` bytes from `fd` into `base`, retrying on `EINTR`.
///
/// - Returns: the number of bytes read (0 at end of file), or `-errno`.
func readSome(_ fd: Int32, _ base: UnsafeMutableRawPointer, _ count: Int) -> Int {
    while true {
        let result = Glibc.read(fd, base, count)
        if result < 0 && errno == EINTR { continue }
        return result < 0 ? -Int(errno) : result
    }
}

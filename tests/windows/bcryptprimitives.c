/* Wine 8 (Debian 12) lacks bcryptprimitives.dll, which Rust's standard
 * library imports on Windows for ProcessPrng. This stand-in, built with
 * mingw for the Windows check only (.ci/windows-check), answers it from
 * RtlGenRandom. Real Windows has the DLL; nothing of this ships. */
#include <windows.h>
#define SystemFunction036 NTAPI SystemFunction036
#include <ntsecapi.h>
#undef SystemFunction036

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
    while (len > 0) {
        ULONG n = len > 0x10000000 ? 0x10000000 : (ULONG)len;
        if (!RtlGenRandom(data, n)) return FALSE;
        data += n;
        len -= n;
    }
    return TRUE;
}

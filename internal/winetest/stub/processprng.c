/*
 * bcryptprimitives.dll for Wine 8.0, which lacks it.
 *
 * Go 1.22 and later Windows binaries call ProcessPrng from
 * bcryptprimitives.dll while the runtime starts, and stop with
 * "bcryptprimitives.dll not found" when it is missing. Wine 8.0 (Debian
 * bookworm) has no such DLL, so the tests build this one with
 * x86_64-w64-mingw32-gcc and put it in their own Wine prefix's system32
 * (next to the .exe is not enough). It forwards to RtlGenRandom
 * (advapi32's SystemFunction036), which Wine has. It is test-only: it is
 * never shipped and never placed in a real Windows.
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length)
{
	while (length > 0) {
		ULONG n = length > 0x40000000 ? 0x40000000 : (ULONG)length;
		if (!SystemFunction036(data, n))
			return FALSE;
		data += n;
		length -= n;
	}
	return TRUE;
}

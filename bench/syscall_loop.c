/* N write(2) calls of one byte to /dev/null and N read(2) calls from
 * /dev/zero: the path of an fd the shim does not track. Run under callgrind
 * with and without the shim; the instruction difference divided by 2N is
 * the cost of the hooks' fast path. */
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 100000;
	int w = open("/dev/null", O_WRONLY), r = open("/dev/zero", O_RDONLY);
	char c = 'x';

	for (long i = 0; i < n; i++) {
		if (write(w, &c, 1) != 1 || read(r, &c, 1) != 1)
			return 1;
	}
	return 0;
}

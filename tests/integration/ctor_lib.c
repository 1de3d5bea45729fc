/* A preloaded library whose constructor makes an HTTP request before the
 * program (and possibly before otelshim's own constructor) runs:
 * OTELSHIM_CTOR_PORT names the server's loopback port. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

__attribute__((constructor)) static void early_request(void)
{
	const char *port = getenv("OTELSHIM_CTOR_PORT");
	struct sockaddr_in sin = { .sin_family = AF_INET };
	char req[128], buf[4096];
	int fd, n;

	if (!port)
		return;
	fd = socket(AF_INET, SOCK_STREAM, 0);
	sin.sin_port = htons((uint16_t)atoi(port));
	inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0)
		return;
	n = snprintf(req, sizeof(req),
		     "GET /from-constructor HTTP/1.1\r\nHost: 127.0.0.1:%s\r\nConnection: close\r\n\r\n",
		     port);
	if (write(fd, req, (size_t)n) != n)
		return;
	while ((n = (int)read(fd, buf, sizeof(buf))) > 0)
		;
	close(fd);
}

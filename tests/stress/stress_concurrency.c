/*
 * stress_concurrency.c - the multi-threaded scenarios of concurrency.h as a plain
 * program, so ThreadSanitizer builds can instrument them. Exit 0 = no violation.
 */
#include "concurrency.h"

#include <stdio.h>

int main(void)
{
    unsigned rooms = stress_rooms(4, 2, 3000);
    unsigned spsc = stress_spsc(300000);
    unsigned ctlq = stress_ctlq(4, 20000);
    unsigned quota = stress_quota(4, 50000);
    printf("stress: rooms %u, spsc %u, ctlq %u, quota %u violations\n", rooms, spsc, ctlq, quota);
    return rooms + spsc + ctlq + quota == 0 ? 0 : 1;
}

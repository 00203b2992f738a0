/*
 * concurrency.h - multi-threaded scenarios for the room table and the worker queues.
 * Each returns the number of invariant violations it saw (0 = pass). They are called
 * from the Criterion unit tests and from stress_concurrency.c, a plain program that
 * TSan builds instrument (Criterion cannot run under TSan).
 */
#ifndef WZP_TEST_CONCURRENCY_H
#define WZP_TEST_CONCURRENCY_H

/* Joiner threads add/remove participants under the write lock while fan-out threads walk
 * the array under the read lock; rooms are acquired and released concurrently. */
unsigned stress_rooms(unsigned joiners, unsigned fanouts, unsigned iterations);

/* One producer and one consumer move messages through an SPSC ring, in order. */
unsigned stress_spsc(unsigned messages);

/* Several producers push into one control queue while a consumer drains it. */
unsigned stress_ctlq(unsigned producers, unsigned per_producer);

/* Threads take and give back sessions and connections of one quota: a session take never
 * passes the limit, a refused take changes nothing, and everything returns to zero. */
unsigned stress_quota(unsigned threads, unsigned iterations);

#endif

#ifndef MESH_CZEROMQ_SHIM_H
#define MESH_CZEROMQ_SHIM_H
#include <zmq.h>
#include <errno.h>
#endif

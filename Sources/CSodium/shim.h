#ifndef MESH_CSODIUM_SHIM_H
#define MESH_CSODIUM_SHIM_H
#include <sodium.h>
#endif

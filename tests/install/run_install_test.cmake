# Script mode: install duplex (static or shared, as SHARED says) into a scratch
# prefix, then build and run the consumer with find_package and with pkg-config.
# BUILD_DIR empty: configure and build the library alone from PROJECT_SOURCE_DIR.
# BROKERS=ON: the broker back ends (duplex_brokers) are installed and checked too.
# DEB=ON: instead of `cmake --install`, build the Debian package with
# `cpack -G DEB`, check its control fields and unpack it (dpkg-deb -x) into a
# scratch root whose usr/ is the prefix.
file(REMOVE_RECURSE ${WORK_DIR})
if(DEB)
  set(prefix ${WORK_DIR}/root/usr)
else()
  set(prefix ${WORK_DIR}/prefix)
endif()
function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}")
  endif()
endfunction()

if(BUILD_DIR STREQUAL "")
  set(BUILD_DIR ${WORK_DIR}/library)
  set(launcher "")
  if(LAUNCHER)
    set(launcher -DCMAKE_CXX_COMPILER_LAUNCHER=${LAUNCHER})
  endif()
  run(${CMAKE_COMMAND} -S ${PROJECT_SOURCE_DIR} -B ${BUILD_DIR} -G Ninja
      -DCMAKE_CXX_COMPILER=${CXX} ${launcher} -DCMAKE_BUILD_TYPE=${BUILD_TYPE}
      -DBUILD_SHARED_LIBS=${SHARED} -DDUPLEX_BUILD_TESTS=OFF -DDUPLEX_BUILD_EXAMPLES=OFF
      -DDUPLEX_BUILD_TOOLS=OFF -DDUPLEX_BUILD_BENCH=OFF -DDUPLEX_BUILD_FUZZ=OFF)
  set(targets duplex duplex_protocol)
  if(BROKERS)
    list(APPEND targets duplex_brokers)
  endif()
  run(${CMAKE_COMMAND} --build ${BUILD_DIR} --target ${targets})
endif()
if(DEB)
  execute_process(COMMAND cpack -G DEB -B ${WORK_DIR}/package WORKING_DIRECTORY ${BUILD_DIR}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  file(GLOB debs ${WORK_DIR}/package/*.deb)
  list(LENGTH debs count)
  if(NOT rc EQUAL 0 OR NOT count EQUAL 1)
    message(FATAL_ERROR "cpack -G DEB failed (${rc}) or made ${count} packages:\n${out}")
  endif()
  execute_process(COMMAND dpkg-deb -f ${debs} Package Version Depends
                  OUTPUT_VARIABLE control RESULT_VARIABLE rc)
  # Development packages a consumer needs, and what dpkg-shlibdeps found.
  set(wants "Package: duplex" "Version: ${VERSION}" "libasio-dev" "libssl-dev" "zlib1g-dev"
      "libssl3" "libstdc++6")
  if(BROKERS AND NOT SHARED)
    list(APPEND wants "libhiredis-dev" "libnats-dev")
  endif()
  foreach(want IN LISTS wants)
    string(FIND "${control}" "${want}" at)
    if(NOT rc EQUAL 0 OR at EQUAL -1)
      message(FATAL_ERROR "${debs}: no '${want}' in its control fields:\n${control}")
    endif()
  endforeach()
  run(dpkg-deb -x ${debs} ${WORK_DIR}/root)
  foreach(f bin/duplex include/duplex/message_websocket.hpp include/duplex/task.hpp
          lib/cmake/duplex/duplexConfig.cmake lib/cmake/duplex/duplexConfigVersion.cmake
          lib/pkgconfig/duplex.pc)
    if(NOT EXISTS ${prefix}/${f})
      message(FATAL_ERROR "${debs} does not hold usr/${f}")
    endif()
  endforeach()
  # (A shared build's tool finds libduplex in /usr/lib once installed; here, in lib/.)
  execute_process(COMMAND ${CMAKE_COMMAND} -E env LD_LIBRARY_PATH=${prefix}/lib
                          ${prefix}/bin/duplex --version
                  OUTPUT_VARIABLE out RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0 OR NOT out STREQUAL "duplex ${VERSION}\n")
    message(FATAL_ERROR "usr/bin/duplex --version: exit ${rc}, '${out}'")
  endif()
else()
  run(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix})
endif()
# What got installed must be the kind asked for.
file(GLOB_RECURSE archives ${prefix}/*.a)
file(GLOB_RECURSE shared_objects ${prefix}/*.so*)
if(SHARED)
  if(archives OR NOT EXISTS ${prefix}/lib/libduplex.so.${SOVERSION})
    message(FATAL_ERROR "shared install: want lib/libduplex.so.${SOVERSION} and no archive, "
                        "got ${archives} ${shared_objects}")
  endif()
elseif(shared_objects OR NOT EXISTS ${prefix}/lib/libduplex.a)
  message(FATAL_ERROR "static install: want lib/libduplex.a and no .so, got ${shared_objects}")
endif()
if(BROKERS)
  if(SHARED)
    set(brokers_lib lib/libduplex_brokers.so.${SOVERSION})
  else()
    set(brokers_lib lib/libduplex_brokers.a)
  endif()
  foreach(f ${brokers_lib} include/duplex/topic_broker.hpp lib/cmake/duplex/duplexBrokersTargets.cmake
          lib/pkgconfig/duplex_brokers.pc)
    if(NOT EXISTS ${prefix}/${f})
      message(FATAL_ERROR "the broker back ends were built but ${f} is not installed")
    endif()
  endforeach()
endif()

# An installed shared libduplex (and libduplex_brokers) loads by its path alone,
# with nothing in the loader's path: its own RUNPATH ($ORIGIN) finds
# libduplex_protocol (and libduplex) beside it, whatever the prefix.
if(SHARED)
  set(libs ${prefix}/lib/libduplex.so.${SOVERSION})
  if(BROKERS)
    list(APPEND libs ${prefix}/lib/libduplex_brokers.so.${SOVERSION})
  endif()
  foreach(lib IN LISTS libs)
    execute_process(COMMAND ${CMAKE_COMMAND} -E env --unset=LD_LIBRARY_PATH
                            python3 -c "import ctypes, sys; ctypes.CDLL(sys.argv[1])" ${lib}
                    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
    if(NOT rc EQUAL 0)
      message(FATAL_ERROR "${lib} does not load by its path alone:\n${out}")
    endif()
  endforeach()
endif()

# A shared consumer must load libduplex through its SONAME.
function(check_linkage exe)
  execute_process(COMMAND readelf -d ${exe} OUTPUT_VARIABLE dyn RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "readelf -d ${exe} failed")
  endif()
  string(FIND "${dyn}" "[libduplex.so.${SOVERSION}]" needed)
  if(SHARED AND needed EQUAL -1)
    message(FATAL_ERROR "${exe} does not need libduplex.so.${SOVERSION}:\n${dyn}")
  elseif(NOT SHARED AND NOT needed EQUAL -1)
    message(FATAL_ERROR "${exe} needs libduplex.so in a static install:\n${dyn}")
  endif()
endfunction()

# 1. CMake package (the build-tree RPATH finds the installed shared library).
run(${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${WORK_DIR}/cmake -G Ninja
    -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_CXX_COMPILER=${CXX} -DWITH_BROKERS=${BROKERS})
run(${CMAKE_COMMAND} --build ${WORK_DIR}/cmake)
check_linkage(${WORK_DIR}/cmake/consumer)
run(${WORK_DIR}/cmake/consumer)
if(BROKERS)
  # It needs libduplex but none of libduplex_protocol's symbols itself, so only
  # libduplex finds that one: through the library path, as in a system
  # install (a RUNPATH does not serve the libraries it loads).
  check_linkage(${WORK_DIR}/cmake/consumer_brokers)
  run(${CMAKE_COMMAND} -E env LD_LIBRARY_PATH=${prefix}/lib ${WORK_DIR}/cmake/consumer_brokers)
endif()

# 2. pkg-config, the plain command a user types (no --static, even for archives).
set(ENV{PKG_CONFIG_PATH} ${prefix}/lib/pkgconfig)
execute_process(COMMAND pkg-config --cflags --libs duplex
                OUTPUT_VARIABLE flags RESULT_VARIABLE rc OUTPUT_STRIP_TRAILING_WHITESPACE)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "pkg-config does not know duplex")
endif()
separate_arguments(flags UNIX_COMMAND "${flags}")
run(${CXX} ${SOURCE_DIR}/main.cpp -o ${WORK_DIR}/consumer_pc ${flags})
check_linkage(${WORK_DIR}/consumer_pc)
run(${CMAKE_COMMAND} -E env LD_LIBRARY_PATH=${prefix}/lib ${WORK_DIR}/consumer_pc)
if(BROKERS)
  execute_process(COMMAND pkg-config --cflags --libs duplex_brokers
                  OUTPUT_VARIABLE flags RESULT_VARIABLE rc OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "pkg-config does not know duplex_brokers")
  endif()
  separate_arguments(flags UNIX_COMMAND "${flags}")
  run(${CXX} ${SOURCE_DIR}/brokers.cpp -o ${WORK_DIR}/consumer_brokers_pc ${flags})
  run(${CMAKE_COMMAND} -E env LD_LIBRARY_PATH=${prefix}/lib ${WORK_DIR}/consumer_brokers_pc)
endif()
